from stylegate.gan.train.cli import cli

cli(prog_name="python -m stylegate.gan.train")
