package examples_test

import (
	"os/exec"
	"testing"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// TestHAProxyExample checks examples/haproxy/haproxy.cfg as it is installed
// (haproxy -c); cmd/redisrepl's TestGatewaysBehindHAProxy runs it, on
// loopback addresses, in front of two gateways and kills one.
func TestHAProxyExample(t *testing.T) {
	bin := webdistest.RequireProgram(t, "haproxy", "haproxy")
	if out, err := exec.Command(bin, "-c", "-f", "haproxy/haproxy.cfg").CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}
