// Package version holds the build's version, set by the linker.
package version

// Version is set with -ldflags "-X .../version.Version=v1.2.3".
var Version = "dev"
