package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// floorName is the physical floor's row: the registry alone ingesting the
// image from memory.
const floorName = "registry floor"

// floorTool is the physical floor of a push of o into reg's repo: this
// process uploads every blob of o from memory, concurrency at a time, each
// as one POST and one monolithic PUT ?digest=, largest first, then puts the manifests
// children first, by digest. Nothing is read from disk, hashed by the
// client or asked first; what is left is the registry's own work and
// loopback HTTP. Its time has no process start.
func floorTool(ctx context.Context, t testing.TB, reg *harness.Registry, repo string, o *imagetest.Object, concurrency int) tool {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var leaves, docs []imagetest.Blob
	var walk func(o *imagetest.Object)
	walk = func(o *imagetest.Object) {
		for _, c := range o.Children {
			walk(c)
		}
		leaves = append(leaves, o.Layers...)
		if o.Config != nil {
			leaves = append(leaves, *o.Config)
		}
		docs = append(docs, o.Blob)
	}
	walk(o)
	// Largest first, as the heal uploads them.
	slices.SortStableFunc(leaves, func(a, b imagetest.Blob) int { return cmp.Compare(b.Desc.Size, a.Desc.Size) })
	return tool{floorName, func() run {
		s0 := selfCPU()
		start := time.Now()
		// As the heal: blobs over 1 MiB concurrency at a time, smaller
		// ones beside them, heal.DefaultConcurrency at a time.
		lanes, lctx := errgroup.WithContext(ctx)
		for _, lane := range []struct {
			large bool
			limit int
		}{{true, concurrency}, {false, heal.DefaultConcurrency}} {
			lanes.Go(func() error {
				g, gctx := errgroup.WithContext(lctx)
				g.SetLimit(lane.limit)
				for _, b := range leaves {
					if (b.Desc.Size > 1<<20) == lane.large {
						g.Go(func() error { return floorBlob(gctx, client, reg.URL(), repo, b) })
					}
				}
				return g.Wait()
			})
		}
		err := lanes.Wait()
		// The children's manifests together, then the root's (as the heal
		// puts a level at a time; the bench's images have two levels).
		put := func(d imagetest.Blob) error {
			return floorDo(ctx, client, http.MethodPut, reg.URL()+"/v2/"+repo+"/manifests/"+d.Desc.Digest.String(), d.Desc.MediaType, d.Data, http.StatusCreated, nil)
		}
		if err == nil {
			var g errgroup.Group
			g.SetLimit(heal.DefaultConcurrency)
			for _, d := range docs[:len(docs)-1] {
				g.Go(func() error { return put(d) })
			}
			if err = g.Wait(); err == nil {
				err = put(docs[len(docs)-1])
			}
		}
		took := time.Since(start)
		if err != nil {
			t.Fatalf("floor push: %v", err)
		}
		return run{took: took, cpu: selfCPU() - s0}
	}}
}

// floorConcurrency is the uploads the floor has in flight: the heal's.
const floorConcurrency = heal.DefaultUploads

func floorBlob(ctx context.Context, client *http.Client, base, repo string, b imagetest.Blob) error {
	var loc string
	err := floorDo(ctx, client, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", "", nil, http.StatusAccepted, func(r *http.Response) { loc = r.Header.Get("Location") })
	if err != nil {
		return err
	}
	u, err := url.Parse(base + "/v2/")
	if err != nil {
		return err
	}
	put, err := u.Parse(loc)
	if err != nil {
		return fmt.Errorf("upload location %q: %w", loc, err)
	}
	q := put.Query()
	q.Set("digest", b.Desc.Digest.String())
	put.RawQuery = q.Encode()
	return floorDo(ctx, client, http.MethodPut, put.String(), "application/octet-stream", b.Data, http.StatusCreated, nil)
}

func floorDo(ctx context.Context, client *http.Client, method, u, ctype string, body []byte, want int, seen func(*http.Response)) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("User-Agent", "regmend-bench-floor")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s", method, u, resp.Status)
	}
	if seen != nil {
		seen(resp)
	}
	return nil
}

// floorSection reports every full heal beside `ctr images push` and the
// registry's floor.
func floorSection(rep *report, full map[string]*measurement, total string) {
	ctr, floor := full["ctr images push"].times.median(), full[floorName].times.median()
	var rows [][]string
	for _, name := range []string{"regmend heal", serveName, pluginName, "ctr images push", "ctr images push --local", floorName} {
		m := full[name]
		rows = append(rows, []string{name, m.times.String(), ratio(m.times.median(), ctr), ratio(m.times.median(), floor), m.requests(),
			secs(m.cpuTool.median()), secs(m.cpuContainerd.median()), secs(m.cpuRegistry.median())})
	}
	rep.add(section{
		title: "Full heal vs the registry's floor (" + total + ", empty registry)",
		intro: "The same full heal by each way regmend runs, beside `ctr images push` and the physical floor: the registry alone ingesting the same blobs from memory " +
			fmt.Sprintf("(this test process: each blob one POST and one monolithic PUT, largest first, %d in flight as the heal has (blobs of 1 MiB or less beside them), then the child manifests together and the index). ", floorConcurrency) +
			"`regmend heal` and ctr are timed from process start to exit; `regmend serve` (a fresh process each run) and containerd-regmend (restarted each run) " +
			"are timed by the daemon's own `regmend_heal_duration_seconds` for the heal a mirror request queued, so neither process start nor the queue's deliberate 300 ms wait for the repository to go quiet is counted. " +
			"The floor has no process start. CPU of the tool is its process's (the floor: this test process; serve and the plugin: from the mirror request until the heal is recorded, the quiet wait included); containerd is the stock node's, which the plugin row does not use.",
		header: []string{"tool", "time", "/ ctr push", "/ floor", "requests", "CPU: tool", "containerd", "registry"},
		rows:   rows,
	})
}
