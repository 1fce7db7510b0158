package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// CacheBlobDescriptors restarts the registry with
// storage.cache.blobdescriptor: inmemory, distribution's sample setting
// (Harbor's redis cache behaves alike): the registry then answers a blob's
// HEAD from what it remembers, not from its storage.
func (r *Registry) CacheBlobDescriptors() {
	r.t.Helper()
	b, err := os.ReadFile(r.config)
	if err != nil {
		r.t.Fatalf("%s: read config: %v", r.name, err)
	}
	cfg := string(b)
	if !strings.Contains(cfg, "\nstorage:\n") {
		r.t.Fatalf("%s: config has no storage section:\n%s", r.name, cfg)
	}
	cfg = strings.Replace(cfg, "\nstorage:\n", "\nstorage:\n  cache:\n    blobdescriptor: inmemory\n", 1)
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		r.t.Fatalf("%s: write config: %v", r.name, err)
	}
	r.Stop()
	r.Start()
}

// GarbageCollectLive runs the real `registry garbage-collect
// --delete-untagged config.yml` on the registry's storage while the
// registry keeps serving (as an operator's cron job does), and returns the
// command's output (also appended to the registry log). A registry that
// caches blob descriptors keeps answering for the blobs it deleted.
func (r *Registry) GarbageCollectLive() string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.binary, "garbage-collect", "--delete-untagged", r.config).CombinedOutput()
	if f, ferr := os.OpenFile(r.logPath, os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== harness: live garbage-collect --delete-untagged (err=%v)\n%s", err, out)
		f.Close()
	}
	if err != nil {
		r.t.Fatalf("%s garbage-collect: %v\n%s", r.name, err, out)
	}
	return string(out)
}

// BlobRead GETs /v2/<repo>/blobs/<dgst> and returns the status and how
// many bytes of the body arrived before it ended or failed (the error).
func (r *Registry) BlobRead(repo, dgst string) (status int, n int64, err error) {
	r.t.Helper()
	resp, err := r.do("GET", "/v2/"+repo+"/blobs/"+dgst, nil)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}
