from edgecnn.cli import app

app(prog_name="edgecnn")
