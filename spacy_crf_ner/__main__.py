"""`python -m spacy_crf_ner <command>`: the package's command line."""
import typer

from .convert import convert_cli

# The callback keeps `convert` a named subcommand even while it is the only one (Typer runs a
# lone command without its name otherwise).
app = typer.Typer(add_completion=False, no_args_is_help=True, callback=lambda: None)
app.command("convert")(convert_cli)

if __name__ == "__main__":
    app()
