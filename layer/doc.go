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
// Non-goals: images, configs and where the blob ends up (packages image and
// export); decompressing layers of other origins.
package layer
