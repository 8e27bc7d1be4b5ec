"""What schedules runs: local sweeps, campaigns under a time budget, Ray clusters, tuning studies and the
speed benchmark."""
