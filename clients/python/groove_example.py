#!/usr/bin/python3
r"""groove_example.py: a Python client of groove-volumed, using nothing of
the C++ client library: its stubs are generated at run time from
proto/groove/v1/*.proto (or --proto-dir, e.g. an install's include/), and
it calls ListPools, AddVolume, Inspect (paging through every volume) and
RemoveVolume.

    /usr/bin/python3 clients/python/groove_example.py \
        --addr 127.0.0.1:50051 --pool default --count 2

Needs Debian 12's python3-grpcio (the runtime, with python3-protobuf),
protobuf-compiler (protoc 3.21) and protobuf-compiler-grpc
(grpc_python_plugin). Debian's python3-grpc-tools (1.14.1) bundles protoc
3.6, which rejects the proto3 `optional` of AddVolumeRequest.first_index,
so the code is generated with Debian's protoc and gRPC's Python plugin.

Adds COUNT volumes (with a fresh UUID v4 request_id, and repeats the add
with that id while its outcome is unknown: add_volumes below) and removes
COUNT again, checking the summaries on the way; use a
pool whose volumes are small or a host with huge pages to spare. Exits 0
and prints "python example ok" on success; 1 on an RPC error (printed as
"error: CODE: message"; a failed TLS handshake is UNAVAILABLE, a missing
or unknown token UNAUTHENTICATED); 2 on a usage error, such as a bad
combination of the security options or a bad file they name (printed as
"error: ..." naming the flag).

Security, as groovectl's flags of the same names and the C++ client's
ClientSecurity (clients/include/groove/client/client_security.h;
docs/SECURITY.md):

    --tls-ca FILE          TLS, trusting the PEM CA certificates in FILE
                           (without it: plaintext)
    --tls-cert FILE        mutual TLS: the client's PEM certificate chain
    --tls-key FILE           and its unencrypted PEM key (both or neither;
                           each needs --tls-ca; the key's FILE mode as
                           --token-file's)
    --tls-server-name NAME the name the server's certificate must carry,
                           when it is not --addr's host (needs --tls-ca)
    --token-file FILE      the bearer token on FILE's first line (16 to 256
                           printable ASCII characters), sent as
                           `authorization: Bearer TOKEN` metadata on every
                           VolumePoolService call. FILE must give others
                           nothing and its group at most read, and group
                           read only when root owns it (a Kubernetes Secret
                           under fsGroup): 0600 or 0400 otherwise. Without
                           --tls-ca the token goes only to a loopback --addr
                           (127.0.0.0/8, [::1], localhost, unix:); there is
                           no switch to send it in plaintext elsewhere.

    /usr/bin/python3 clients/python/groove_example.py \
        --addr volumes.internal:50051 --tls-ca ca.pem \
        --tls-cert client.pem --tls-key client.key \
        --token-file ~/.groove-token --pool default --count 2

The token travels as per-call metadata, not as gRPC call credentials
(grpc.access_token_call_credentials): gRPC refuses call credentials on a
plaintext channel, and the server accepts tokens over plaintext on
loopback; per-call metadata works over both, as in the C++ client.
"""

import argparse
import ipaddress
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.join(HERE, "..", "..", "proto")


# The server's token rule (server/include/groove/server/security.h).
MIN_TOKEN_BYTES = 16
MAX_TOKEN_BYTES = 256
# A line of the server's token file that starts with it is a comment, so
# no token may start with it; the C++ clients' rule, with their message
# (proto/include/groove/v1/token_file.h: kTokenFileComment,
# TokenStartProblem).
TOKEN_FILE_COMMENT = b"#"
TOKEN_START_PROBLEM = ("the token starts with '#', which makes its line in "
                       "the server's token file a comment: no server can "
                       "accept it; generate another (e.g. openssl rand -hex "
                       "32)")


class UsageError(Exception):
    """A bad option or a bad file it names: exit 2, "error: MESSAGE"."""


def read_file(path, flag, secret=False):
    """Returns the bytes of the regular file `path`, named by `flag`.

    Refuses what is not a regular file (judged on the file opened, without
    blocking: a FIFO would block the read forever), as the C++ client's
    ReadWholeFile does; with `secret` (a token file, a private key), also
    one that others may read (token_file_mode_problem, judged on the file
    opened), as its ReadSecretFile does. Raises UsageError "FLAG PATH: ..."
    naming both.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError("%s %s: cannot read: %s" % (flag, path, e.strerror))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UsageError("%s %s: is not a regular file" % (flag, path))
    problem = ""
    if secret:
        problem = token_file_mode_problem(st.st_mode, st.st_uid)
    if problem:
        os.close(fd)
        raise UsageError("%s %s: %s (mode %04o); chmod 600 %s" %
                         (flag, path, problem, stat.S_IMODE(st.st_mode),
                          path))
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as e:
            raise UsageError("%s %s: cannot read: %s" %
                             (flag, path, e.strerror))


def read_pem(path, flag, kind):
    """Returns the PEM file `path`, which must hold a block of `kind`
    ("CERTIFICATE", "PRIVATE KEY"; "EC PRIVATE KEY" counts), unencrypted.
    OpenSSL's full checks (does the key match the certificate?) happen in
    the handshake, whose failure the first call reports as UNAVAILABLE.
    """
    # A private key is a secret: whoever reads it can pose as this client.
    text = read_file(path, flag, secret=(kind == "PRIVATE KEY"))
    if b"-----BEGIN " not in text or (kind + "-----").encode() not in text:
        raise UsageError("%s %s: holds no PEM %s (-----BEGIN %s-----)" %
                         (flag, path, kind, kind))
    if kind == "PRIVATE KEY" and b"ENCRYPTED" in text:
        raise UsageError("%s %s: is encrypted; give the unencrypted key "
                         "(openssl pkey)" % (flag, path))
    return text


def token_file_mode_problem(mode, uid):
    """Returns why a token file of `mode` owned by `uid` must not be used,
    or "" when it may: the C++ client's rule (client_security.cc). Others
    get nothing, the group at most read, and group read only on a
    root-owned file (a Kubernetes Secret under the pod's fsGroup is
    root:fsGroup 0440; a user's own 0640 file is a loose umask).
    """
    if mode & 0o007:
        return "is accessible to others"
    if not mode & 0o070:
        return ""
    if mode & 0o030:
        return "is writable or executable by its group"
    if uid != 0:
        return ("is readable by its group and not owned by root (group read "
                "is accepted only on a root-owned file, such as a Kubernetes "
                "Secret under fsGroup)")
    return ""


def read_token_file(path):
    """Returns the token on the first line of the token file `path`,
    stripped, after checking the file's mode and the token's form.
    Messages never contain the token.
    """
    flag = "--token-file"
    token = read_file(path, flag, secret=True).split(b"\n", 1)[0].strip()
    if token.startswith(TOKEN_FILE_COMMENT):
        raise UsageError("%s %s: %s" % (flag, path, TOKEN_START_PROBLEM))
    if not MIN_TOKEN_BYTES <= len(token) <= MAX_TOKEN_BYTES:
        raise UsageError("%s %s: the token is %d bytes; tokens are %d to %d "
                         "bytes" % (flag, path, len(token), MIN_TOKEN_BYTES,
                                    MAX_TOKEN_BYTES))
    for i, byte in enumerate(token):
        if byte in b" \t":
            # Most often a line copied from the server's `TOKEN ROLE` file.
            raise UsageError("%s %s: byte %d of the token is a space or tab: "
                             "the first line must hold the token alone (not "
                             "`TOKEN ROLE`, the server's format)" %
                             (flag, path, i + 1))
        if byte < 0x20 or byte >= 0x7f:
            raise UsageError("%s %s: byte %d of the token is not printable "
                             "ASCII" % (flag, path, i + 1))
    return token.decode("ascii")


def is_loopback_target(address):
    """Reports whether gRPC target `address` ("host:port", "ipv4:HOST:PORT",
    "dns:///host:port", "unix:PATH", ...) names this host: a 127.0.0.0/8 or
    ::1 address, "localhost", or a unix socket. The C++ client's
    IsLoopbackTarget, line for line.
    """
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address
    if host.startswith("dns:"):
        host = host[len("dns:"):]
        if host.startswith("//"):  # dns://AUTHORITY/host:port
            host = host[2:]
            host = host[host.find("/") + 1:]
    elif host.startswith(("ipv4:", "ipv6:")):
        host = host[len("ipv4:"):]
    if not host:
        return False
    colon = host.rfind(":")
    if colon > 0 and (host[0] != "[" or host[colon - 1] == "]"):
        host = host[:colon]
    if host.lower() == "localhost":
        return True
    text = host[1:] if host.startswith("[") else host
    text = text[:-1] if text.endswith("]") else text
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def load_security(args):
    """Reads and checks every file the security options name, before any
    connection is tried, as the C++ client's LoadClientSecurity does.

    Returns (tls, metadata): tls is None for plaintext, else a dict of the
    PEM bytes for grpc.ssl_channel_credentials and the server name
    override; metadata is the call metadata of every VolumePoolService
    call (the authorization header, or none). Raises UsageError naming the
    flag.
    """
    if not args.tls_ca:
        for value, flag in ((args.tls_cert, "--tls-cert"),
                            (args.tls_key, "--tls-key"),
                            (args.tls_server_name, "--tls-server-name")):
            if value:
                raise UsageError("%s needs TLS: also give --tls-ca, the CA "
                                 "that signed the server's certificate" % flag)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("mutual TLS needs both --tls-cert and --tls-key")
    tls = None
    if args.tls_ca:
        tls = {
            "root_certificates": read_pem(args.tls_ca, "--tls-ca",
                                          "CERTIFICATE"),
            "certificate_chain": None,
            "private_key": None,
            "server_name": args.tls_server_name,
        }
        if args.tls_cert:
            tls["certificate_chain"] = read_pem(args.tls_cert, "--tls-cert",
                                                "CERTIFICATE")
            tls["private_key"] = read_pem(args.tls_key, "--tls-key",
                                          "PRIVATE KEY")
    metadata = ()
    if args.token_file:
        token = read_token_file(args.token_file)
        if tls is None and not is_loopback_target(args.addr):
            raise UsageError(
                "refusing to send the bearer token in plaintext to %s, which "
                "is not a loopback address: give --tls-ca for TLS (a token "
                "without TLS goes only to 127.0.0.0/8, [::1], localhost or "
                "unix:)" % args.addr)
        metadata = (("authorization", "Bearer " + token),)
    return tls, metadata


def open_channel(grpc, addr, tls):
    """Returns a channel to addr: plaintext when tls is None, else TLS with
    tls's certificates and server name override."""
    if tls is None:
        return grpc.insecure_channel(addr)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls["root_certificates"],
        private_key=tls["private_key"],
        certificate_chain=tls["certificate_chain"])
    options = []
    if tls["server_name"]:
        options.append(("grpc.ssl_target_name_override", tls["server_name"]))
    return grpc.secure_channel(addr, credentials, options=options)


def generate(proto_dir, out_dir):
    """Generates the Python messages and stubs of groove.v1 in out_dir."""
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    subprocess.run(
        [protoc, "-I", proto_dir, "--python_out", out_dir,
         "--grpc_python_out", out_dir,
         "--plugin=protoc-gen-grpc_python=" + plugin,
         "groove/v1/volume_pool.proto", "groove/v1/config.proto"],
        check=True)


# The codes after which AddVolume is repeated with the same request_id: the
# request may have reached the server (UNAVAILABLE, CANCELLED, UNKNOWN), or
# the first call with that id still runs there (ABORTED). The server answers
# a repeat with the first call's result, or makes the add if the first did
# not happen (docs/SERVER.md section 3, request_id).
REPEATED_ADD_CODES = ("UNAVAILABLE", "CANCELLED", "UNKNOWN", "ABORTED")


def add_volumes(grpc, stub, request, call, max_attempts=8):
    """AddVolume, repeated with the request's id while its outcome is
    unknown, within call["timeout"] seconds for all attempts, as the C++
    client's VolumePoolClient::AddVolume does. A repeat waits for the
    connection (wait_for_ready) rather than failing at once while the
    channel reconnects. Raises the last grpc.RpcError when the attempts or
    the time run out, or at once on any other code."""
    assert request.request_id, "only an add with a request_id is repeated"
    deadline = time.monotonic() + call["timeout"]
    backoff = 0.1
    for attempt in range(1, max_attempts + 1):
        try:
            return stub.AddVolume(
                request, timeout=max(0.001, deadline - time.monotonic()),
                metadata=call["metadata"], wait_for_ready=attempt > 1)
        except grpc.RpcError as e:
            if (e.code().name not in REPEATED_ADD_CODES
                    or attempt == max_attempts
                    or time.monotonic() + backoff >= deadline):
                raise
            print("AddVolume attempt %d: %s: %s; repeating it with "
                  "request_id %s" % (attempt, e.code().name, e.details(),
                                     request.request_id), file=sys.stderr)
            time.sleep(backoff)
            backoff = min(2 * backoff, 1.0)


class PagingError(Exception):
    """The server's Inspect pages would never end (see check_page)."""


def check_page(pool, pages, sent_token, page, max_pages, last_index):
    """Checks `page`, page number `pages` (1 for the first) of a listing of
    pool's volumes, answering page_token `sent_token`, as
    groove::InspectPageGuard (clients/include/groove/client/inspect_pages.h)
    does: a real server never fails it. `max_pages` is max_volumes + 1 as
    the first page's summary says, `last_index` the highest index listed
    before (None: none yet). Returns the highest index listed now; raises
    PagingError naming the server's misbehaviour when the page's
    next_page_token is `sent_token` again, an index is not above every index
    before it, or page `max_pages` still has a token.
    """
    def misbehaves(what):
        return PagingError(
            "the server misbehaves: Inspect of pool '%s', page %d of the "
            "listing: %s; stopped following next_page_token (a listing that "
            "would never end)" % (pool, pages, what))
    token = page.next_page_token
    if token and token == sent_token:
        raise misbehaves("its next_page_token is the page_token just sent "
                         "for it")
    for v in page.volumes:
        if last_index is not None and v.index <= last_index:
            raise misbehaves(
                "it lists volume %d after volume %d (indices ascend across "
                "the pages of a listing, each at most once)" %
                (v.index, last_index))
        last_index = v.index
    if token and pages >= max_pages:
        raise misbehaves(
            "it still has a next_page_token, but a listing of a pool of "
            "max_volumes %d has at most %d pages" % (max_pages - 1, max_pages))
    return last_index


def inspect_volumes(stub, pb, pool, call):
    """Returns (summary, volumes) of pool: the first page's summary and the
    volumes of every page, in index order. `call` holds the keyword
    arguments of every call (timeout, metadata).

    Pages until next_page_token is empty, not until a page comes back
    short: a page holds at most 1000 volumes, and one call looks at no more
    than 65,536 indices, so a sparse pool's pages can be short or empty
    with more to follow (proto/groove/v1/volume_pool.proto, InspectRequest).
    Raises PagingError when the server's pages would never end (check_page).
    """
    summary, volumes, token, pages, last_index = None, [], "", 0, None
    while True:
        page = stub.Inspect(
            pb.InspectRequest(pool=pool, include_volumes=True,
                              page_size=1000, page_token=token),
            **call)
        pages += 1
        if summary is None:
            summary = page.summary
        last_index = check_page(pool, pages, token, page,
                                summary.max_volumes + 1, last_index)
        volumes.extend(page.volumes)
        token = page.next_page_token
        if not token:
            return summary, volumes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--pool", default="default")
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per call")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="TLS, trusting these PEM CA certificates")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="mutual TLS: the client's PEM certificate "
                        "(with --tls-key)")
    parser.add_argument("--tls-key", metavar="FILE",
                        help="mutual TLS: the client's unencrypted PEM key "
                        "(with --tls-cert)")
    parser.add_argument("--tls-server-name", metavar="NAME",
                        help="the name the server's certificate must carry")
    parser.add_argument("--token-file", metavar="FILE",
                        help="the bearer token on FILE's first line (mode "
                        "0600); without --tls-ca, loopback --addr only")
    args = parser.parse_args()
    try:
        tls, metadata = load_security(args)
    except UsageError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    # Every VolumePoolService call: its deadline and the token, if any.
    call = {"timeout": args.timeout, "metadata": metadata}

    out_dir = tempfile.mkdtemp(prefix="groove-py-")
    try:
        generate(args.proto_dir, out_dir)
        sys.path.insert(0, out_dir)
        import grpc  # noqa: E402 (Debian's python3-grpcio)
        from groove.v1 import volume_pool_pb2 as pb  # noqa: E402
        from groove.v1 import volume_pool_pb2_grpc as pb_grpc  # noqa: E402

        with open_channel(grpc, args.addr, tls) as channel:
            stub = pb_grpc.VolumePoolServiceStub(channel)
            try:
                pools = stub.ListPools(pb.ListPoolsRequest(), **call)
                for p in pools.pools:
                    print("pool %s: %d/%d volumes of %d bytes" %
                          (p.name, p.volumes_mapped, p.max_volumes,
                           p.volume_size_bytes))
                before = stub.Inspect(pb.InspectRequest(pool=args.pool),
                                      **call).summary
                added = add_volumes(
                    grpc, stub,
                    pb.AddVolumeRequest(pool=args.pool, count=args.count,
                                        info=b"python example",
                                        request_id=str(uuid.uuid4())),
                    call)
                print("added indices %s" % list(added.volume_indices))
                assert len(added.volume_indices) == args.count
                summary, volumes = inspect_volumes(stub, pb, args.pool, call)
                assert (summary.volumes_mapped ==
                        before.volumes_mapped + args.count)
                infos = {v.index: v.info for v in volumes}
                for i in added.volume_indices:
                    assert infos[i] == b"python example", infos
                removed = stub.RemoveVolume(
                    pb.RemoveVolumeRequest(pool=args.pool, count=args.count),
                    **call)
                print("removed indices %s" %
                      [v.index for v in removed.volumes])
                assert (removed.summary.volumes_mapped ==
                        before.volumes_mapped)
            except grpc.RpcError as e:
                print("error: %s: %s" % (e.code().name, e.details()),
                      file=sys.stderr)
                return 1
            except PagingError as e:
                print("error: INTERNAL: %s" % e, file=sys.stderr)
                return 1
        print("python example ok")
        return 0
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
