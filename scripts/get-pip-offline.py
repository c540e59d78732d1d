"""Stand-in for ansible-test's downloaded get-pip bootstrap script, for machines that reach
PyPI but not ansible-test's CI file host. ansible-test runs it as
``python get_pip_<ver>.py [pip options] pip==<ver> --no-setuptools --no-wheel``: bootstrap pip
from the interpreter's bundled wheel (ensurepip), then let pip install the requested packages.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
               stdout=subprocess.DEVNULL)
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install"] + args, check=False).returncode)
