package filever

import (
	"io/fs"
	"os"
)

// Same reports whether b, a later stat of the file a came from, is the same
// version: the same file (a rename over it or a ConfigMap's ..data swap
// makes another), of the same size, modification and change time. The
// change time catches what the others miss: a same-size rewrite within one
// modification-time tick, or by a tool that restores the modification time
// (no tool can set the change time). A nil a is never the same.
func Same(a, b fs.FileInfo) bool {
	if a == nil || b == nil {
		return false
	}
	if !os.SameFile(a, b) || a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()) {
		return false
	}
	ca, oka := changeTime(a)
	cb, okb := changeTime(b)
	return oka == okb && ca == cb
}
