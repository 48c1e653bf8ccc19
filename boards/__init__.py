"""Board description files (``<id>.toml``), packaged as ``hwquant.board_files``: a data package."""
