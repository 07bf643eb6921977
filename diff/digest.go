package diff

import (
	"crypto/sha256"
	"encoding/hex"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// EmptyDiffID is the diffID of a layer with no changes: 1024 zero bytes.
var EmptyDiffID = v1.Hash{Algorithm: "sha256", Hex: "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"}

// ChainID returns the chainID of the top of a stack of layers given their
// diffIDs bottom first: chainID(1) = diffID(1), chainID(n) =
// sha256(chainID(n-1) + " " + diffID(n)) over the "sha256:..." strings.
// It returns the zero Hash for no layers.
func ChainID(diffIDs []v1.Hash) v1.Hash {
	ids := ChainIDs(diffIDs)
	if len(ids) == 0 {
		return v1.Hash{}
	}
	return ids[len(ids)-1]
}

// ChainIDs returns the chainID of every layer of the stack, bottom first.
func ChainIDs(diffIDs []v1.Hash) []v1.Hash {
	out := make([]v1.Hash, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1].String() + " " + d.String()))
		out[i] = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	}
	return out
}
