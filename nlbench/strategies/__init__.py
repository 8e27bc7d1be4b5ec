"""The paper's methods: nested, cms, nested-cms, and the source blog's recipe (nested-blog)."""
