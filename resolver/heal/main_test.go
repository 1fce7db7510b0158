package heal_test

import (
	"testing"

	"github.com/containerd/log"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// containerd's local store warns that fsverity is unsupported in tmpfs.
	_ = log.SetLevel("error")
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"), goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}
