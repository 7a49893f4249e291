"""Tooling around the stack that is not the stack itself.

* ``lab.py``       -- the Docker compose lab driver (``tcplab lab up/down/...``);
* ``bench.py``     -- the benchmark (``tcplab bench``): namespaces, kernel vs stack;
* ``benchpeer.py`` -- the benchmark's client and server program (``python -m
  stack.tools.benchpeer``), run inside the namespaces.
"""
