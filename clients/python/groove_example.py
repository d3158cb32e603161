#!/usr/bin/python3
"""groove_example.py: a Python client of groove-volumed, using nothing of
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

Adds COUNT volumes (with a fresh UUID v4 request_id, so that a retry is
safe) and removes COUNT again, checking the summaries on the way; use a
pool whose volumes are small or a host with huge pages to spare. Exits 0
and prints "python example ok" on success; 1 on an RPC error (printed as
"error: CODE: message").
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.join(HERE, "..", "..", "proto")


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


def inspect_volumes(stub, pb, pool, timeout):
    """Returns (summary, volumes) of pool: the first page's summary and the
    volumes of every page, in index order.

    Pages until next_page_token is empty, not until a page comes back
    short: a page holds at most 1000 volumes, and one call looks at no more
    than 65,536 indices, so a sparse pool's pages can be short or empty
    with more to follow (proto/groove/v1/volume_pool.proto, InspectRequest).
    """
    summary, volumes, token = None, [], ""
    while True:
        page = stub.Inspect(
            pb.InspectRequest(pool=pool, include_volumes=True,
                              page_size=1000, page_token=token),
            timeout=timeout)
        if summary is None:
            summary = page.summary
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
    args = parser.parse_args()

    out_dir = tempfile.mkdtemp(prefix="groove-py-")
    try:
        generate(args.proto_dir, out_dir)
        sys.path.insert(0, out_dir)
        import grpc  # noqa: E402 (Debian's python3-grpcio)
        from groove.v1 import volume_pool_pb2 as pb  # noqa: E402
        from groove.v1 import volume_pool_pb2_grpc as pb_grpc  # noqa: E402

        with grpc.insecure_channel(args.addr) as channel:
            stub = pb_grpc.VolumePoolServiceStub(channel)
            try:
                pools = stub.ListPools(pb.ListPoolsRequest(),
                                       timeout=args.timeout)
                for p in pools.pools:
                    print("pool %s: %d/%d volumes of %d bytes" %
                          (p.name, p.volumes_mapped, p.max_volumes,
                           p.volume_size_bytes))
                before = stub.Inspect(pb.InspectRequest(pool=args.pool),
                                      timeout=args.timeout).summary
                added = stub.AddVolume(
                    pb.AddVolumeRequest(pool=args.pool, count=args.count,
                                        info=b"python example",
                                        request_id=str(uuid.uuid4())),
                    timeout=args.timeout)
                print("added indices %s" % list(added.volume_indices))
                assert len(added.volume_indices) == args.count
                summary, volumes = inspect_volumes(stub, pb, args.pool,
                                                   args.timeout)
                assert (summary.volumes_mapped ==
                        before.volumes_mapped + args.count)
                infos = {v.index: v.info for v in volumes}
                for i in added.volume_indices:
                    assert infos[i] == b"python example", infos
                removed = stub.RemoveVolume(
                    pb.RemoveVolumeRequest(pool=args.pool, count=args.count),
                    timeout=args.timeout)
                print("removed indices %s" %
                      [v.index for v in removed.volumes])
                assert (removed.summary.volumes_mapped ==
                        before.volumes_mapped)
            except grpc.RpcError as e:
                print("error: %s: %s" % (e.code().name, e.details()),
                      file=sys.stderr)
                return 1
        print("python example ok")
        return 0
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
