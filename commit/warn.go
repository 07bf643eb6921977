package commit

import (
	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/export"
)

// SparseWarning is the warning a --sparse commit to the reference to
// under profile p needs, "" for none: the image runs, but the engine
// cannot save or push it afterwards (compat.Profile.SparseBreaksSave).
// A docker-root: or docker-archive: destination is read by a Docker,
// and every Docker profile has that limitation, whatever p is.
func SparseWarning(p compat.Profile, to string) string {
	docker := false
	if t, _, err := export.Parse(to); err == nil {
		docker = t.Name() == "docker-root" || t.Name() == "docker-archive"
	}
	if !p.SparseBreaksSave && !docker {
		return ""
	}
	return "--sparse: Docker loads and runs this image, but its docker save and docker push fail (\"could not verify layer data\": dockerd rebuilds the layer from tar-split's dense record of the sparse files)"
}
