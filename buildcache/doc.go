// Package buildcache moves the builder's step cache (statedir cache
// entries and their layer blobs) to and from places runners share:
// --cache-to / --cache-from type=registry,ref=REF (any OCI registry) and
// type=local,dest=|src=DIR (an OCI image layout).
//
// Format: one OCI image manifest (artifactType and config media type
// ConfigMediaType). Its config blob is the cache index: for each step,
// the step key the builder computed, the step's image config and the
// record of its layer blob. Its layers are those blobs themselves, under
// their own media types and digests: they are the very blobs of the built
// image, so a registry stores them once whichever of image and cache is
// pushed first (the second upload is a HEAD that finds it; in another
// repository of the same registry, a cross-repository mount), and its gc
// keeps them as long as the cache manifest is tagged. A cache ref is
// written with one manifest PUT (a layout with one index.json rename)
// after every blob it names is in: a reader sees the old cache or the
// new one, never a mix, and of two exports at once the last PUT wins.
//
// Trust: a cache is trusted only as far as its digests. The index blob is
// read by digest and checked; the builder asks an imported cache only for
// the key it computes itself, copies each blob into the state dir through
// statedir.ImportBlob (digest, size and diffID checked before use) and
// uses a config only if it extends the step's parent. A missing or
// corrupt blob makes the step run, with a warning.
//
// Stage: beside the pipeline, between builder (whose CacheSource and
// CacheRecord it speaks) and the registry/layout; commit.Build uses it.
//
// Non-goals: BuildKit's cache format (its keys are not ours, so neither
// could use the other's entries), multi-platform caches, and gc of a
// local cache dir (blobs no index names stay until the user removes them).
package buildcache
