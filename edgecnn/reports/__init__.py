"""HTML reports a person opens in a browser: classify, evaluate and train (Jinja2 templates, no network).

A report is one HTML file with its data inside (a JSON blob read by plain JavaScript) and its thumbnails in a
folder beside it (``report_files/``, 25 to an atlas JPEG), or embedded in the page for small runs. It works from ``file://``,
renders lazily (thumbnails in chunks, ``loading="lazy"``) and shows every file name as text. This package
imports only ``edgecnn.core``: apps (classify, evaluate) and training use it without importing each other.
"""
