// Package layer is the second stage of layercommit: it turns a diff.Source
// into a compressed, content-addressed layer blob and offers it as a
// go-containerregistry v1.Layer.
//
// One pass over the change set yields everything: diff.Write streams the
// tar into a MultiWriter of (diffID hash, counter, compressor), and the
// compressor writes into a MultiWriter of (temp file, digest hash, counter).
// The temp file sits in the directory the caller names (beside the final
// destination) and is renamed to its digest once complete.
//
// Compression is part of a layer's identity: the compressor, its level and
// its block size are pinned in compression.go, so the same tar always gives
// the same blob digest (see TestGoldenDigests).
//
// Two seekable formats let a puller start before it has the whole blob:
// estargz (estargz.go; gzip to every other reader, its diffID includes
// the TOC entry the format puts in the stream) and zstd:chunked
// (zstdchunked.go; zstd to every other reader, the diffID the tar's).
// Their TOC locations and digests are the layer's Annotations, which the
// image stage copies onto the manifest's layer descriptor.
//
// Non-goals: images, configs and where the blob ends up (packages image and
// export); decompressing layers of other origins.
package layer
