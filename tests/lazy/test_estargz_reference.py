"""Our eStargz layers against the reference implementation, both ways.

The reference is the `estargz` Go package of containerd/stargz-snapshotter, from Debian's
`golang-github-containerd-stargz-snapshotter-dev` (source under /usr/share/gocode), built here
into a small program: `read` opens a blob with `estargz.Open`, verifies the TOC against the
annotation digest and every chunk with the TOC's verifiers; `build` writes an eStargz blob
from a tar with `estargz.Build`, which our reader must then read and verify.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from modelyard.oci import estargz
from modelyard.oci.layout import Layout
from modelyard.pack import PackOptions, pack
from modelyard.testing.files import MiB, make_model, tree
from modelyard.testing.peers import run

GOPATH_SRC = Path("/usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz")

PROGRAM = r"""
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		os.Exit(1)
	}
}

func read(blob, toc string, names []string) {
	f, err := os.Open(blob)
	must(err)
	st, _ := f.Stat()
	r, err := estargz.Open(io.NewSectionReader(f, 0, st.Size()))
	must(err)
	d, err := digest.Parse(toc)
	must(err)
	v, err := r.VerifyTOC(d)
	must(err)
	for _, name := range names {
		e, ok := r.Lookup(name)
		if !ok {
			must(fmt.Errorf("no %s in the TOC", name))
		}
		sec, err := r.OpenFile(name)
		must(err)
		chunks := 0
		for off := int64(0); off < e.Size; chunks++ {
			ce, ok := r.ChunkEntryForOffset(name, off)
			if !ok {
				must(fmt.Errorf("no chunk at %d of %s", off, name))
			}
			vr, err := v.Verifier(ce)
			must(err)
			buf := make([]byte, ce.ChunkSize)
			if _, err := sec.ReadAt(buf, ce.ChunkOffset); err != nil && err != io.EOF {
				must(err)
			}
			vr.Write(buf)
			if !vr.Verified() {
				must(fmt.Errorf("chunk at %d of %s does not verify", off, name))
			}
			off += ce.ChunkSize
		}
		h := sha256.New()
		io.Copy(h, io.NewSectionReader(sec, 0, e.Size))
		fmt.Printf("%s %d sha256:%x %d\n", name, e.Size, h.Sum(nil), chunks)
	}
}

func build(tarPath, out string, chunkSize int) {
	f, err := os.Open(tarPath)
	must(err)
	st, _ := f.Stat()
	b, err := estargz.Build(io.NewSectionReader(f, 0, st.Size()), estargz.WithChunkSize(chunkSize))
	must(err)
	o, err := os.Create(out)
	must(err)
	_, err = io.Copy(o, b)
	must(err)
	must(b.Close())
	must(o.Close())
	fmt.Println(b.TOCDigest())
}

func main() {
	switch os.Args[1] {
	case "read":
		read(os.Args[2], os.Args[3], os.Args[4:])
	case "build":
		n, err := strconv.Atoi(os.Args[4])
		must(err)
		build(os.Args[2], os.Args[3], n)
	}
}
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None or not GOPATH_SRC.is_dir():
        raise RuntimeError(
            "the reference eStargz reader needs `golang-go` and "
            "`golang-github-containerd-stargz-snapshotter-dev`; run ./scripts/test"
        )
    root = tmp_path_factory.mktemp("go")
    src = root / "src" / "estargzref"
    src.mkdir(parents=True)
    (src / "main.go").write_text(PROGRAM)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{root}:/usr/share/gocode",
        "GOCACHE": str(root / "cache"),
        "GOFLAGS": "",
    }
    run(["go", "build", "-o", str(root / "ref"), "estargzref"], env=env)
    return root / "ref"


def test_reference_reader_verifies_packed_layers(reference: Path, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", weights=2, weight_size=9 * MiB)
    out = tmp_path / "layout"
    pack(model, "v1", out, PackOptions(threshold=1 * MiB, format="estargz"))
    lay = Layout.open(out)
    manifest = lay.image_manifests(lay.resolve("v1"))[0][1]
    files = tree(model)
    seen = set()
    for desc in manifest.layers:
        title = desc.annotations.get("org.opencontainers.image.title")
        names = [title] if title else ["config.json", "tokenizer.json"]
        proc = subprocess.run(
            [
                str(reference),
                "read",
                str(lay.blob_path(desc.digest)),
                desc.annotations[estargz.TOC_DIGEST_ANNOTATION],
                *names,
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        for line in proc.stdout.splitlines():
            name, size, digest, chunks = line.split()
            assert digest == "sha256:" + hashlib.sha256(files[name]).hexdigest()
            assert int(size) == len(files[name])
            # 9 MiB in 4 MiB chunks: 3 chunks, each verified by the reference.
            assert int(chunks) == (3 if title else 1)
            seen.add(name)
    assert seen == set(files)


def test_reference_rejects_a_wrong_toc_digest(reference: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    w = estargz.EStargzWriter(out.write)
    w.begin_file("a.txt", 5)
    w.write(b"hello")
    w.end_file()
    w.close()
    (tmp_path / "blob").write_bytes(out.getvalue())
    proc = subprocess.run(
        [str(reference), "read", str(tmp_path / "blob"), "sha256:" + "0" * 64, "a.txt"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0


def test_our_reader_reads_blobs_built_by_the_reference(reference: Path, tmp_path: Path) -> None:
    rng = __import__("random").Random(4)
    files = {
        "config.json": b'{"x": 1}',
        "w/big.bin": rng.randbytes(5 * MiB + 3),
        "w/text.txt": b"abc\n" * 100000,
        "empty": b"",
    }
    with tarfile.open(tmp_path / "in.tar", "w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("w")
        info.type = tarfile.DIRTYPE
        t.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    proc = subprocess.run(
        [str(reference), "build", str(tmp_path / "in.tar"), str(tmp_path / "blob"), str(1 * MiB)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    toc_digest = proc.stdout.strip()
    blob = (tmp_path / "blob").read_bytes()
    read = lambda s, e: blob[s:e]  # noqa: E731
    toc = estargz.read_toc(read, len(blob), toc_digest)
    for name, data in files.items():
        f = toc.file(name)
        assert f is not None, (name, toc.names())
        assert b"".join(estargz.iter_file(read, f)) == data
    assert len(toc.file("w/big.bin").chunks) == 6  # type: ignore[union-attr]
    assert json.loads(toc.raw)["version"] == 1
