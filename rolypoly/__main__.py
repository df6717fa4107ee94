from rolypoly.cli import run

run()
