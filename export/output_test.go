package export

import (
	"strings"
	"testing"
)

func TestParseOutput(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: refs joined by " "
	}{
		{"oci:out:v1", "oci:out:v1"},
		{"docker://reg/app:1", "docker://reg/app:1"},
		{"type=oci,dest=o.tar", "oci-archive:o.tar"},
		{"type=oci,dest=o.tar,name=v1", "oci-archive:o.tar:v1"},
		{"type=oci,dest=dir,tar=false", "oci:dir"},
		{"type=docker,dest=d.tar,name=app:1", "docker-archive:d.tar:app:1"},
		{"type=docker,name=app:1", "docker-daemon:app:1"},
		{`type=docker,"name=a,b"`, "docker-daemon:a docker-daemon:b"},
		{"type=image", "local:"},
		{"type=image,name=app:1", "local:app:1"},
		{"type=image,name=reg/app:1,push=true", "docker://reg/app:1"},
		{"type=registry,name=reg/app:1", "docker://reg/app:1"},
		{"type=local,dest=fs", "rootfs:fs"},
		{"type=tar,dest=fs.tar", "rootfs-tar:fs.tar"},
		{"dest=fs.tar,type=tar,compression=zstd", "rootfs-tar:fs.tar"},
		{"type=image,name=app,annotation.org.x=y,oci-mediatypes=true", "local:app"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			refs, err := ParseOutput(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(refs, " "); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"type=", "type=oci", "type=registry", "type=docker", "type=tar,dest=-", "type=local,x", "type=image,push=true", "type=ftp,dest=x", "type=oci,dest=x,what=1", `type=oci,"dest=x`} {
		if refs, err := ParseOutput(bad); err == nil {
			t.Errorf("ParseOutput(%q) = %v, want an error", bad, refs)
		}
	}
}
