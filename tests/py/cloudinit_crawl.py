#!/usr/bin/python3
"""Crawl an IMDS endpoint with the REAL cloud-init EC2 datasource.

Usage (Debian's system python, where the `cloud-init` package lives):

    /usr/bin/python3 tests/py/cloudinit_crawl.py --url http://127.0.0.1:PORT \
        [--require-token] [--deadline 10] [--cloud-name aws] [--verbose]

What it does:
  * builds cloudinit.sources.DataSourceEc2.DataSourceEc2 with a real Debian
    distro object, Paths pointing at a temp dir, and
    sys_cfg = {datasource: {Ec2: {metadata_urls: [URL], timeout, max_wait,
    strict_id: false}}};
  * forces the datasource's cloud name to "aws" (attribute `_cloud_name`,
    since DMI says we are not on EC2).  In cloud-init that is what switches
    on the IMDSv2 logic: PUT /latest/api/token with
    X-aws-ec2-metadata-token-ttl-seconds, then X-aws-ec2-metadata-token on
    every GET (and no IMDSv1 fallback).  `--cloud-name unknown` instead
    exercises cloud-init's plain IMDSv1 path (no token at all);
  * runs the datasource's public entry point get_data() -> _get_data() ->
    crawl_metadata() (wait_for_metadata_service, get_metadata_api_version,
    ec2.get_instance_userdata / get_instance_metadata /
    get_instance_identity), which also persists instance-data.json into the
    temp dir;
  * prints one JSON document on stdout and exits 0; on any failure prints a
    message on stderr and exits 1 (2 for usage / import problems).

No cloud-init network code is patched.  The only observation hooks are a
logging handler on the "cloudinit" logger (cloud-init logs every request it
makes via url_helper.readurl, with token headers shown as "REDACTED") and a
pass-through wrapper around the datasource's own headers callback
(`ds._get_headers`) that records which headers it handed out.
"""

import argparse
import base64
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from urllib.parse import urlparse

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_ROUTE = "latest/api/token"


class CrawlError(Exception):
    pass


class DeadlineExceeded(BaseException):
    # BaseException on purpose: crawl_metadata() swallows `Exception` and
    # would turn the timeout into a silent empty result.
    pass


def die(msg, code=1):
    print("cloudinit_crawl: FAIL: %s" % msg, file=sys.stderr)
    sys.exit(code)


def to_jsonable(obj):
    """Make the crawl result JSON-safe (bytes -> utf-8 text or base64)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        try:
            return bytes(obj).decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(bytes(obj)).decode("ascii")}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


def encode_user_data(ud):
    if ud is None:
        ud = b""
    if isinstance(ud, str):
        ud = ud.encode("utf-8")
    out = {
        "present": bool(ud),
        "size": len(ud),
        "base64": base64.b64encode(ud).decode("ascii"),
        "utf8": None,
    }
    try:
        out["utf8"] = ud.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return out


class RequestRecorder(logging.Handler):
    """Collects the requests cloud-init's url_helper.readurl says it makes.

    readurl logs: "[%s/%s] open '%s' with %s configuration" with args
    (attempt, tries, url, filtered_req_args) where filtered_req_args holds
    method and headers (token headers replaced by "REDACTED").
    """

    def __init__(self, echo=False):
        super().__init__(logging.DEBUG)
        self.requests = []
        self.problems = []  # cloud-init WARNING+ messages (failed fetches etc.)
        self.echo = echo

    def emit(self, record):
        try:
            if self.echo:
                print("cloud-init: %s" % record.getMessage(), file=sys.stderr)
            if record.levelno >= logging.WARNING:
                self.problems.append("%s: %s" % (record.levelname, record.getMessage()))
            if (
                isinstance(record.msg, str)
                and record.msg.startswith("[%s/%s] open '%s'")
                and isinstance(record.args, tuple)
                and len(record.args) == 4
            ):
                attempt, tries, url, cfg = record.args
                headers = dict(cfg.get("headers") or {})
                self.requests.append(
                    {
                        "method": cfg.get("method", "GET"),
                        "url": url,
                        "path": urlparse(url).path or "/",
                        "attempt": attempt,
                        "tries": tries,
                        "token_header": TOKEN_HEADER in headers,
                        "ttl_header": TTL_HEADER in headers,
                    }
                )
        except Exception:  # never let logging break the crawl
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="IMDS base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument(
        "--require-token",
        action="store_true",
        help="fail unless cloud-init obtained an IMDSv2 token and sent it on every GET",
    )
    ap.add_argument(
        "--cloud-name",
        default="aws",
        help="value forced into the datasource's cloud name (default aws = IMDSv2 path; "
        "'unknown' = cloud-init's IMDSv1 path)",
    )
    ap.add_argument("--deadline", type=float, default=10.0, help="hard wall-clock limit in seconds (default 10)")
    ap.add_argument("--timeout", type=int, default=2, help="Ec2 ds 'timeout' (per request while waiting for IMDS)")
    ap.add_argument("--max-wait", type=int, default=3, help="Ec2 ds 'max_wait' (waiting for IMDS to answer)")
    ap.add_argument(
        "--allow-warnings",
        action="store_true",
        help="do not fail when cloud-init logs WARNING+ (e.g. a user-data 500 it swallowed after retries)",
    )
    ap.add_argument("--verbose", "-v", action="store_true", help="echo cloud-init debug log to stderr")
    args = ap.parse_args()

    base_url = args.url.rstrip("/")
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        die("--url must look like http://HOST:PORT, got %r" % args.url, 2)

    try:
        import cloudinit
        from cloudinit import helpers, util, version
        from cloudinit import distros
        from cloudinit.sources import DataSourceEc2 as ec2mod
    except ImportError as e:
        die(
            "cannot import cloud-init (%s); install Debian's cloud-init package and run "
            "with /usr/bin/python3 (running %s)" % (e, sys.executable),
            2,
        )

    recorder = RequestRecorder(echo=args.verbose)
    cilog = logging.getLogger("cloudinit")
    cilog.setLevel(logging.DEBUG)
    cilog.addHandler(recorder)
    cilog.propagate = False  # keep cloud-init's own warnings off stderr unless --verbose

    def on_alarm(signum, frame):
        raise DeadlineExceeded()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.deadline)

    tmp = tempfile.mkdtemp(prefix="ci-crawl-")
    started = time.monotonic()
    try:
        try:
            result = crawl(args, base_url, parsed, recorder, helpers, util, distros, ec2mod, tmp)
        except DeadlineExceeded:
            raise CrawlError(
                "deadline of %ss exceeded (cloud-init retries failing requests 5 times "
                "with 1 s sleeps); last requests: %s"
                % (args.deadline, [r["method"] + " " + r["path"] for r in recorder.requests[-5:]])
            )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except CrawlError as e:
        msg = str(e)
        retried = sorted({r["method"] + " " + r["path"] for r in recorder.requests if r["attempt"]})
        if retried:
            msg += "\n  requests cloud-init had to retry (failed at least once): %s" % retried
        if recorder.problems and "logged warnings" not in msg:
            msg += "\n  cloud-init warnings: %s" % "\n    ".join([""] + recorder.problems)
        die(msg)
    except Exception as e:  # anything cloud-init raised
        import traceback

        traceback.print_exc(file=sys.stderr)
        die("crawl raised %s: %s" % (type(e).__name__, e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    result["cloud_init_version"] = version.version_string()
    result["elapsed_seconds"] = round(time.monotonic() - started, 3)
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def crawl(args, base_url, parsed, recorder, helpers, util, distros, ec2mod, tmp):
    cloud_dir = os.path.join(tmp, "cloud")
    run_dir = os.path.join(tmp, "run")
    os.makedirs(cloud_dir)
    os.makedirs(run_dir)
    paths = helpers.Paths({"cloud_dir": cloud_dir, "run_dir": run_dir})

    sys_cfg = {
        "datasource_list": ["Ec2"],
        "datasource": {
            "Ec2": {
                "metadata_urls": [base_url],
                "timeout": args.timeout,
                "max_wait": args.max_wait,
                "retries": 1,
                # Not on EC2: do not bail out on unknown platform.
                "strict_id": "false",
                "apply_full_imds_network_config": True,
            }
        },
    }
    distro_cls = distros.fetch("debian")
    distro = distro_cls("debian", {}, paths)

    # util.is_resolvable() first resolves three bogus names to detect DNS
    # hijacking; with an IP-literal URL that probe is pointless and can stall
    # for a long time in sandboxes without DNS.  Pre-seed its cache.
    try:
        ipaddress.ip_address(parsed.hostname)
        if getattr(util, "_DNS_REDIRECT_IP", None) is None:
            util._DNS_REDIRECT_IP = set()
    except ValueError:
        pass

    ds = ec2mod.DataSourceEc2(sys_cfg, distro, paths)
    # DMI says "unknown" here; "aws" is what enables cloud-init's IMDSv2 path.
    ds._cloud_name = args.cloud_name.lower()

    handed_out = []
    orig_get_headers = ds._get_headers

    def recording_get_headers(url=""):
        h = orig_get_headers(url)
        handed_out.append({"url": url, "headers": sorted((h or {}).keys())})
        return h

    ds._get_headers = recording_get_headers  # instance attr; crawl passes self._get_headers

    if not hasattr(ds, "crawl_metadata"):
        raise CrawlError("installed cloud-init's DataSourceEc2 has no crawl_metadata()")

    # Same as DataSource.get_data(), split so the crawl is validated before
    # persist_instance_data() (which raises obscure KeyErrors on a bad crawl).
    ds._dirty_cache = True
    ok = ds._get_data()  # DataSourceEc2._get_data() -> crawl_metadata()
    crawled = getattr(ds, "_crawled_metadata", None)
    if not ok or not crawled:
        raise CrawlError(
            "cloud-init DataSourceEc2._get_data() returned %r / empty crawl (metadata_address=%r); requests: %s"
            % (ok, ds.metadata_address, [r["method"] + " " + r["path"] for r in recorder.requests])
        )

    meta = crawled.get("meta-data") or {}
    if not meta:
        raise CrawlError("crawl returned an empty meta-data tree (a listed entry probably failed)")
    if "instance-id" not in meta:
        raise CrawlError("meta-data has no instance-id: keys=%s" % sorted(meta))
    identity = (crawled.get("dynamic") or {}).get("instance-identity") or {}
    if ds.cloud_name == "aws" and not isinstance(identity.get("document"), dict):
        raise CrawlError(
            "dynamic/instance-identity/document missing or not JSON object: %r" % (identity.get("document"),)
        )

    if recorder.problems and not args.allow_warnings:
        raise CrawlError(
            "cloud-init logged warnings/errors during the crawl (use --allow-warnings to ignore): %s"
            % recorder.problems
        )

    # Writes instance-data.json into the temp run dir; exercises
    # get_instance_id / get_hostname / get_public_ssh_keys / region like a boot.
    ds.persist_instance_data(write_cache=False)

    token = getattr(ds, "_api_token", None)
    gets = [r for r in recorder.requests if r["method"] != "PUT"]
    puts = [r for r in recorder.requests if r["method"] == "PUT"]
    token_info = {
        "obtained": bool(token),
        "token_puts": [r["path"] for r in puts],
        "puts_had_ttl_header": bool(puts) and all(r["ttl_header"] for r in puts),
        "gets_total": len(gets),
        "gets_with_token": sum(1 for r in gets if r["token_header"]),
        "headers_cb_calls": len(handed_out),
        "headers_cb_gave_token": sum(1 for h in handed_out if TOKEN_HEADER in h["headers"]),
    }
    if args.require_token:
        problems = []
        if not token:
            problems.append("datasource has no _api_token")
        if not puts:
            problems.append("no PUT /%s was made" % TOKEN_ROUTE)
        elif not token_info["puts_had_ttl_header"]:
            problems.append("token PUT lacked %s" % TTL_HEADER)
        if not puts or puts[0]["path"] != "/" + TOKEN_ROUTE:
            problems.append("first token PUT path was %r" % (puts[0]["path"] if puts else None))
        missing = [r["path"] for r in gets if not r["token_header"]]
        if not gets:
            problems.append("no GETs recorded")
        if missing:
            problems.append("GETs without %s: %s" % (TOKEN_HEADER, missing))
        if problems:
            raise CrawlError("IMDSv2 token check failed: " + "; ".join(problems))

    derived, derived_errors = {}, {}
    for name, fn in (
        ("instance_id", ds.get_instance_id),
        ("availability_zone", lambda: ds.availability_zone),
        ("region", lambda: ds.region),
        ("local_hostname", lambda: ds.get_hostname().hostname),
        ("public_ssh_keys", ds.get_public_ssh_keys),
        ("launch_index", lambda: ds.launch_index),
        ("network_config", lambda: ds.network_config),
    ):
        try:
            derived[name] = to_jsonable(fn())
        except Exception as e:  # report, don't fail: the crawl itself succeeded
            derived_errors[name] = "%s: %s" % (type(e).__name__, e)

    return {
        "ok": True,
        "url": base_url,
        "cloud_name": ds.cloud_name,
        "metadata_address": ds.metadata_address,
        "api_version": crawled.get("_metadata_api_version"),
        "meta-data": to_jsonable(meta),
        "user-data": encode_user_data(crawled.get("user-data")),
        "dynamic": to_jsonable(crawled.get("dynamic") or {}),
        "token": token_info,
        "cloudinit_warnings": recorder.problems,
        "derived": derived,
        "derived_errors": derived_errors,
        "requests": [
            {k: r[k] for k in ("method", "path", "attempt", "token_header", "ttl_header")}
            for r in recorder.requests
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
