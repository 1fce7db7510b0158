package peers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
)

func TestRendezvousIsStableAndSpreads(t *testing.T) {
	nodes := []string{"10.0.0.1:5052", "10.0.0.2:5052", "10.0.0.3:5052", "10.0.0.4:5052"}
	first := map[string]int{}
	for i := range 400 {
		d := digest.FromString(fmt.Sprint(i))
		order := Rendezvous(d, nodes)
		shuffled := Rendezvous(d, []string{nodes[3], nodes[1], nodes[0], nodes[2], nodes[1]})
		if !slices.Equal(order, shuffled) {
			t.Fatalf("order depends on input order: %v vs %v", order, shuffled)
		}
		first[order[0]]++
		// Removing a node that is not first keeps the owner.
		without := Rendezvous(d, slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == order[1] }))
		if without[0] != order[0] {
			t.Fatalf("removing the second node moved the owner of %s", d)
		}
		// Removing the owner hands the root to the second, and the rest
		// keep their order.
		ownerGone := Rendezvous(d, slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == order[0] }))
		if !slices.Equal(ownerGone, order[1:]) {
			t.Fatalf("without the owner %s of %s: order %v, want %v (the second takes over)", order[0], d, ownerGone, order[1:])
		}
	}
	for _, n := range nodes {
		if first[n] < 60 {
			t.Errorf("node %s owns %d of 400 roots; rendezvous should spread them (%v)", n, first[n], first)
		}
	}
}

func TestRankerRanksLiveHolders(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 1024)
	holders := []*holderNode{startHolder(t, tok, img), startHolder(t, tok, img)}
	lacking := startHolder(t, tok, nil)
	var urls []string
	for _, h := range append(holders, lacking) {
		urls = append(urls, h.srv.URL)
	}
	self := "127.0.0.1:1" // this node's endpoint, never dialled
	members, err := NewMembership(WithSelf(self), WithStatic(append(urls, "http://"+self)...))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(members, staticSource(tok), WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	target := heal.Target{Registry: testRegistry, Repository: testRepo, Root: img.Root()}
	turn, err := NewRanker(c).Turn(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	rank := turn.Rank
	ids := []string{self}
	for _, h := range holders {
		p, _ := ParsePeer(h.srv.URL)
		ids = append(ids, p.ID)
	}
	order := Rendezvous(img.Desc.Digest, ids)
	if want := slices.Index(order, self); rank != want {
		t.Errorf("rank %d, want %d of %v", rank, want, order)
	}
	// Probes queue nothing; a node that is not first asks the owner, once.
	for i, h := range holders {
		p, _ := ParsePeer(h.srv.URL)
		want := 0
		if rank > 0 && order[0] == p.ID {
			want = 1
		}
		if got := len(h.queue.requests()); got != want {
			t.Errorf("holder %d (%s) queued %d heals, want %d (rank %d, order %v)", i, p.ID, got, want, rank, order)
		}
	}
	if got := len(lacking.queue.requests()); got != 0 {
		t.Errorf("the node lacking the root queued %d heals", got)
	}

	// A node with no identity cannot rank: it heals as a single node.
	anon, _ := NewMembership(WithStatic(urls...))
	c2, _ := NewClient(anon, staticSource(tok))
	if _, err := NewRanker(c2).Turn(context.Background(), target); err == nil {
		t.Error("rank without identity succeeded")
	}
}
