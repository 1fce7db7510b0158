package deny_test

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/deny"
)

func ExampleParse() {
	revoked := digest.FromString("revoked image")
	l, err := deny.Parse("/etc/regmend/deny", strings.NewReader(`
# CVE-2026-0001: revoked everywhere
`+revoked.String()+`
edge:5000/leaky   # a secret in a layer
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(l.Denied("edge:5000", "app", revoked))
	fmt.Println(l.Denied("edge:5000", "leaky", digest.FromString("any")))
	fmt.Println(l.Denied("edge:5000", "app", digest.FromString("any")))

	_, err = deny.Parse("/etc/regmend/deny", strings.NewReader("edge:5000/app:v1\n"))
	fmt.Println(err)
	// Output:
	// sha256:e657f6cd7f085e75cb45222722a1f9da75d87afc5af032a9e4b3e53eac3c3a6c true
	// edge:5000/leaky true
	//  false
	// deny file /etc/regmend/deny line 1: "edge:5000/app:v1": a tag names no content: deny a digest (REGISTRY/REPO@sha256:...) or the whole repository: invalid argument
}
