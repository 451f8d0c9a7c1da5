#!/usr/bin/env python3
"""proto_gen.py - C messages for etcd's gRPC API, made at build time.

Reads etcd's own .proto files (Debian's golang-etcd-server-dev ships them), strips what only
Go's generators understand (the gogoproto options and the google.api.http annotations, with
their imports), writes the result beside the outputs with flat import names, and runs protoc-c
over it.

usage: proto_gen.py PROTOC_C ETCD_SRC OUTDIR
"""
import os
import re
import subprocess
import sys

# source path under ETCD_SRC -> flat name the others import it by
FILES = [
    ("mvcc/mvccpb/kv.proto", "kv.proto"),
    ("auth/authpb/auth.proto", "auth.proto"),
    ("etcdserver/etcdserverpb/rpc.proto", "rpc.proto"),
    ("etcdserver/api/v3lock/v3lockpb/v3lock.proto", "v3lock.proto"),
    ("etcdserver/api/v3election/v3electionpb/v3election.proto", "v3election.proto"),
]
FLAT = {"etcd/" + src: flat for src, flat in FILES}


def strip(text):
    # option (google.api.http) = { ... }; blocks, with one level of additional_bindings { }
    text = re.sub(r"option\s*\(google\.api\.http\)\s*=\s*\{(?:[^{}]|\{[^{}]*\})*\}\s*;", "",
                  text)
    text = re.sub(r"^\s*option\s*\(gogoproto\.[a-z_]+\)\s*=\s*[a-z]+\s*;\s*$", "", text,
                  flags=re.M)
    # field options such as [(gogoproto.nullable) = false]
    text = re.sub(r"\s*\[\s*\(gogoproto\.[^\]]*\]", "", text)
    out = []
    for line in text.splitlines():
        m = re.match(r'\s*import\s+"([^"]+)"\s*;', line)
        if m:
            name = m.group(1)
            if name.startswith("gogoproto/") or name.startswith("google/api/"):
                continue
            if name not in FLAT:
                sys.exit(f"proto_gen: unexpected import {name}")
            line = f'import "{FLAT[name]}";'
        out.append(line)
    text = "\n".join(out) + "\n"
    if "gogoproto" in text or "google.api" in text:
        sys.exit("proto_gen: an annotation was left after stripping")
    return text


def main():
    protoc, src, outdir = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    os.makedirs(outdir, exist_ok=True)
    for rel, flat in FILES:
        path = os.path.join(src, rel)
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as e:
            sys.exit(f"proto_gen: {e} (install Debian's golang-etcd-server-dev, "
                     "or set -Detcd_proto_dir)")
        with open(os.path.join(outdir, flat), "w", encoding="utf-8") as f:
            f.write(strip(text))
    subprocess.run([protoc, "--proto_path=" + outdir, "--c_out=" + outdir] +
                   [flat for _, flat in FILES], cwd=outdir, check=True)


if __name__ == "__main__":
    main()
