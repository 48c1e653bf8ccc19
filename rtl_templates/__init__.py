"""Jinja2 templates of hand-written glue (Yosys scripts, board tops, constraints): a data package."""
