"""The package's command line: ``python -m spacy_crf_ner <command>``."""
import typer

from .calibration import calibrate

app = typer.Typer(add_completion=False, no_args_is_help=True)
# A callback keeps `calibrate` a named subcommand while it is the only command.
app.callback()(lambda: None)
app.command("calibrate")(calibrate)

if __name__ == "__main__":
    app()
