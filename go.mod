module github.com/layercommit/layercommit

go 1.26.0

require (
	github.com/google/go-containerregistry v0.22.1
	golang.org/x/sys v0.50.0
)
