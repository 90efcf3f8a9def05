"""`nextbest sandbox ...`: run the local Intercom and Stripe stand-in."""

import typer

app = typer.Typer(help="The local stand-in for the Intercom and Stripe APIs.", no_args_is_help=True)
