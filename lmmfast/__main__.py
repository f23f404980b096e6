from lmmfast.cli import command

command()
