"""The package's command line: ``python -m spacy_crf_ner <command>``."""
import typer

from .annotate import annotate_command

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """spacy-crf-ner's commands (a callback, so that typer keeps the command names even when
    there is a single command)."""


app.command("annotate")(annotate_command)

if __name__ == "__main__":
    app()
