"""A slow-starting Python application: imports a large set of standard-library modules, builds
some state, then writes READY_FILE and idles. Used by bench/pyapp.py (cold start vs restore)."""

import argparse  # noqa: F401
import asyncio  # noqa: F401
import concurrent.futures  # noqa: F401
import csv  # noqa: F401
import dataclasses  # noqa: F401
import decimal  # noqa: F401
import difflib  # noqa: F401
import doctest  # noqa: F401
import email.mime.multipart  # noqa: F401
import email.mime.text  # noqa: F401
import email.parser  # noqa: F401
import ftplib  # noqa: F401
import gzip  # noqa: F401
import http.client  # noqa: F401
import http.cookiejar  # noqa: F401
import http.server  # noqa: F401
import imaplib  # noqa: F401
import inspect  # noqa: F401
import json  # noqa: F401
import logging.handlers  # noqa: F401
import lzma  # noqa: F401
import mailbox  # noqa: F401
import multiprocessing.managers  # noqa: F401
import multiprocessing.pool  # noqa: F401
import pdb  # noqa: F401
import pickletools  # noqa: F401
import plistlib  # noqa: F401
import pydoc  # noqa: F401
import smtplib  # noqa: F401
import sqlite3  # noqa: F401
import ssl  # noqa: F401
import statistics  # noqa: F401
import sys
import tarfile  # noqa: F401
import time
import typing  # noqa: F401
import unittest.mock  # noqa: F401
import urllib.request  # noqa: F401
import uuid  # noqa: F401
import xml.dom.minidom  # noqa: F401
import xml.etree.ElementTree  # noqa: F401
import xmlrpc.client  # noqa: F401
import xmlrpc.server  # noqa: F401
import zipfile  # noqa: F401

# a heavy PyPI stack, whatever of it is installed
for _mod in ("msgspec", "requests", "jinja2", "flask", "pydantic", "cryptography.x509",
             "boto3", "numpy", "scipy.stats", "sympy"):
    try:
        __import__(_mod)
    except ImportError:
        pass

# some application state built at start-up
TABLE = {i: str(i) * 3 for i in range(200_000)}
PATTERNS = [__import__("re").compile(rf"item-{i}-(\d+)") for i in range(2000)]

with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("ready\n")
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(0.05)
