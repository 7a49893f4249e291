"""tcplab: a TCP/IP stack in Python on a Linux TUN device."""

__version__ = "0.1.0"
