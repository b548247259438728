package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Gateway: the two hubs side by side in one run, interleaved round after
// round so that a noisy neighbour hurts them alike: nginx+webdis
// (webdistest's default front) and the gateway (FrontGateway), each in
// processes of their own as a hub runs them: the gateway is the redisrepl
// binary ("redisrepl gateway", access log on, to a file), built from this
// tree unless -gateway-bin names one. Its tenant has the namespaces the
// scenarios write. For each:
//
//	gateway_ceiling_set_c8      one SET per request, 8 connections
//	gateway_ceiling_mset100_c8  one MSET of 100 keys per request, 8 connections
//	gateway_burst20k            the link's burst of 20,000 keys
//
// Each line gives the gateway's figure, nginx+webdis's (nginx_webdis=) and
// their ratio; the targets are ≥ 1.5× for single SETs and ≥ 1× for the
// burst. The ceilings also give the CPU the front spent per request
// (front_cpu_us_per_req: the gateway's process, or nginx's and webdis's)
// and how many times less the gateway spends (front_cpu_ratio): on a
// shared machine, throughput swings with the neighbours' load, CPU per
// request much less. The gateway's tenant has the whole keyspace, as in webdistest.

const (
	gatewayTargetSet   = 1.5
	gatewayTargetBurst = 1.0
)

func runGateway(ctx context.Context, b *bench) error {
	type side struct {
		name string
		opts webdistest.Options
		hub  *webdistest.Hub
	}
	bin, cleanup, err := gatewayBinary(b.gatewayBin)
	if err != nil {
		return err
	}
	defer cleanup()
	sides := []*side{
		{name: "nginx_webdis", opts: defaultHub},
		{name: "gateway", opts: webdistest.Options{MaxBodySize: defaultHub.MaxBodySize, Front: webdistest.FrontGateway,
			GatewayBinary: bin, Namespaces: []string{"ceil:", "burst:"}}},
	}
	for _, sd := range sides {
		h, err := b.startHub(ctx, sd.opts)
		if err != nil {
			return err
		}
		defer b.closeHub(h)
		sd.hub = h
	}
	dur := 3 * time.Second
	n := 20_000
	if b.quick {
		dur = time.Second
	}
	s := series{}
	for round := range b.rounds {
		for _, c := range []ceiling{{"ceiling_set_c8", 8, 1}, {"ceiling_mset100_c8", 8, 100}} {
			for _, sd := range sides {
				cpu0 := cpuSnapshot(sd.hub)
				keys, _, all, secs, err := loadGen(ctx, sd.hub, c.conns, c.perReq, dur)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sd.name, c.name, err)
				}
				// The front's CPU per request (nginx+webdis, or the
				// gateway): what the machine's load does not change much.
				d := cpuSnapshot(sd.hub).since(cpu0)
				front := d["nginx"] + d["webdis"] + d["gateway"]
				nreq := float64(all) / float64(c.perReq)
				s.add(sd.name+"/"+c.name+"/front_us", front*1e6/nreq)
				s.add(sd.name+"/"+c.name+"/client_us", d["bench"]*1e6/nreq)
				s.add(sd.name+"/"+c.name+"/redis_us", d["redis_remote"]*1e6/nreq)
				s.add(sd.name+"/"+c.name, float64(keys)/secs)
				progress("round %d %s %s: %.0f keys/s", round+1, sd.name, c.name, float64(keys)/secs)
				remote, err := sd.hub.Remote()
				if err != nil {
					return err
				}
				err = flush(remote)
				remote.Close()
				if err != nil {
					return err
				}
			}
		}
		for _, sd := range sides {
			local, remote, err := dialBoth(sd.hub)
			if err != nil {
				return err
			}
			r, err := burstOnce(ctx, b, sd.hub, local, remote, n)
			local.Close()
			remote.Close()
			if err != nil {
				return fmt.Errorf("%s burst: %w", sd.name, err)
			}
			s.add(sd.name+"/burst", r.keysPerS)
			progress("round %d %s burst%s: %.0f keys/s (complete=%v)", round+1, sd.name, kn(n), r.keysPerS, r.complete)
		}
	}
	for _, f := range []struct {
		name, key string
		target    float64
	}{
		{"gateway_ceiling_set_c8", "ceiling_set_c8", gatewayTargetSet},
		{"gateway_ceiling_mset100_c8", "ceiling_mset100_c8", 0},
		{"gateway_burst" + kn(n), "burst", gatewayTargetBurst},
	} {
		g, w := s.med("gateway/"+f.key), s.med("nginx_webdis/"+f.key)
		kv := append(s.headline("keys_per_s", "gateway/"+f.key), "nginx_webdis", w, "ratio", ratio(g/w))
		if f.key != "burst" {
			gf, wf := s.med("gateway/"+f.key+"/front_us"), s.med("nginx_webdis/"+f.key+"/front_us")
			kv = append(kv, "front_cpu_us_per_req", gf, "front_cpu_us_per_req_nginx_webdis", wf, "front_cpu_ratio", ratio(wf/gf),
				// The load generator (this process: the HTTPS client) and
				// the hub's Redis share the two cores with the front.
				"client_cpu_us_per_req", s.med("gateway/"+f.key+"/client_us"),
				"redis_cpu_us_per_req", s.med("gateway/"+f.key+"/redis_us"))
		}
		if f.target > 0 {
			kv = append(kv, "target", fmt.Sprintf(">=%gx", f.target), "pass", yesNo(g/w >= f.target))
		}
		b.emit(f.name, append(kv, "conns", 8, "rounds", b.rounds)...)
	}
	return nil
}

// gatewayBinary is path, or the redisrepl binary built from this tree
// into a temporary directory (removed by cleanup).
func gatewayBinary(path string) (bin string, cleanup func(), err error) {
	if path != "" {
		return path, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "redisrepl-bench-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "redisrepl")
	progress("building the gateway: go build -o %s ./cmd/redisrepl", bin)
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/redisrepl").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build ./cmd/redisrepl (run from the repository's root, or give -gateway-bin): %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
