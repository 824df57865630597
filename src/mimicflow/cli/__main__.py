from mimicflow.cli import app

app()
