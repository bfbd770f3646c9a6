from dsc.cli import command

command()
