#!/usr/bin/python3
"""Read a GCE metadata server with the REAL cloud-init GCE datasource.

Usage (Debian's system python, where the `cloud-init` package lives):

    /usr/bin/python3 tests/py/gce_cloudinit.py [--host HOST:PORT] \
        [--default-user NAME] [--deadline 10] [--verbose]

--host defaults to $GCE_METADATA_HOST.

What it does: calls cloudinit.sources.DataSourceGCE.read_md(
address="http://HOST:PORT/computeMetadata/v1/", url_params=...,
platform_check=False) -- the crawl DataSourceGCE._get_data() runs at boot
(platform_check off because DMI does not say Google here). read_md GETs
instance/id, instance/zone, instance/hostname, and
instance/attributes/?recursive=True and project/attributes/?recursive=True
(JSON), each with Metadata-Flavor: Google, and builds the meta-data
(instance-id, availability-zone, local-hostname, public-keys-data) and
user-data (from the `user-data` attribute, base64 when
`user-data-encoding` says so).

Prints the result as one JSON document (user-data as UTF-8 text, or base64
when it is not) with what the datasource derives from it (hostname, region,
the SSH keys it would install, the requests cloud-init logged) and exits 0;
exits 1 with "gce_cloudinit: FAIL: ..." on stderr when read_md reports
failure, a required value is empty, or the deadline passes (2 for usage or
import problems). No cloud-init code is patched.
"""

import argparse
import base64
import ipaddress
import json
import logging
import os
import signal
import sys
from urllib.parse import urlparse


class DeadlineExceeded(BaseException):
    # BaseException: cloud-init catches Exception around requests.
    pass


def die(msg, code=1):
    print("gce_cloudinit: FAIL: %s" % msg, file=sys.stderr)
    sys.exit(code)


class RequestRecorder(logging.Handler):
    """The URLs cloud-init's url_helper.readurl says it opens, and any
    warning cloud-init logs."""

    def __init__(self, echo):
        super().__init__(logging.DEBUG)
        self.urls, self.problems, self.echo = [], [], echo

    def emit(self, record):
        try:
            msg = record.getMessage()
            if self.echo:
                print("cloud-init: %s" % msg, file=sys.stderr)
            if record.levelno >= logging.WARNING:
                self.problems.append(msg)
            if isinstance(record.msg, str) and record.msg.startswith("[%s/%s] open '%s'"):
                self.urls.append(record.args[2])
        except Exception:  # logging must never break the crawl
            pass


def user_data(ud):
    if ud is None:
        return None
    try:
        return {"utf8": ud.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(ud).decode("ascii")}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default=os.environ.get("GCE_METADATA_HOST"), help="listener host:port")
    ap.add_argument("--default-user", default=None, help="the distro's default user, whose SSH keys count too")
    ap.add_argument("--deadline", type=float, default=10.0, help="hard wall-clock limit in seconds")
    ap.add_argument("--verbose", "-v", action="store_true", help="echo cloud-init's log to stderr")
    args = ap.parse_args()
    if not args.host:
        die("give --host HOST:PORT or set GCE_METADATA_HOST", 2)
    return args


def main():
    args = parse_args()
    address = "http://%s/computeMetadata/v1/" % args.host
    try:
        from cloudinit import sources, util
        from cloudinit.sources import DataSourceGCE as gce
    except ImportError as e:
        die("cannot import cloud-init (%s); install Debian's cloud-init and run with "
            "/usr/bin/python3 (running %s)" % (e, sys.executable), 2)

    # util.is_resolvable() first resolves bogus names to detect DNS
    # hijacking: pointless (and slow without DNS) for an IP-literal host.
    try:
        ipaddress.ip_address(urlparse(address).hostname)
        if getattr(util, "_DNS_REDIRECT_IP", None) is None:
            util._DNS_REDIRECT_IP = set()
    except ValueError:
        pass

    recorder = RequestRecorder(args.verbose)
    cilog = logging.getLogger("cloudinit")
    cilog.setLevel(logging.DEBUG)
    cilog.addHandler(recorder)
    cilog.propagate = False

    def on_alarm(signum, frame):
        raise DeadlineExceeded()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.deadline)
    # (max_wait_seconds, timeout_seconds, num_retries, sec_between_retries)
    params = sources.URLParams(args.deadline, 2, 0, 1)
    try:
        ret = gce.read_md(address=address, url_params=params, platform_check=False)
    except DeadlineExceeded:
        die("deadline of %ss exceeded; requests: %s" % (args.deadline, recorder.urls))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

    if not ret.get("success"):
        die("read_md failed: %s; requests: %s; warnings: %s" % (ret.get("reason"), recorder.urls, recorder.problems))
    md = ret["meta-data"]
    for key in ("instance-id", "availability-zone", "local-hostname"):
        if not md.get(key):
            die("read_md gave an empty %s: %r" % (key, md))
    for key in ("instance-data", "project-data"):
        if md.get(key) is not None and not isinstance(json.loads(md[key]), dict):
            die("%s is not a JSON object: %r" % (key, md[key]))

    result = {
        "ok": True,
        "address": address,
        "meta-data": md,
        "user-data": user_data(ret.get("user-data")),
        "derived": {
            # What DataSourceGCE's properties make of it.
            "hostname": md["local-hostname"].split(".")[0],
            "region": md["availability-zone"].rsplit("-", 1)[0],
            "public_keys": gce._parse_public_keys(md["public-keys-data"], args.default_user),
        },
        "requests": recorder.urls,
        "cloudinit_warnings": recorder.problems,
    }
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
