package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
)

// A tenant's ACL password is derived from the gateway's server key and the
// user's name, not drawn at random: several gateways serving one hub
// behind a load balancer (README, "Several gateways") present the same
// certificate, so they set the same password, and none locks the others'
// new connections out (a random one per gateway made each SETUSER undo the
// other's). It is as secret as the key, never written down, and changes
// with the key.

// passwordSeed is what tenant passwords are derived from: the contents of
// the server key file.
func passwordSeed(keyFile string) ([]byte, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("server key %s: %w", keyFile, err)
	}
	return b, nil
}

// tenantPassword is the ACL password of user.
func (g *Gateway) tenantPassword(user string) string {
	m := hmac.New(sha256.New, g.seed)
	m.Write([]byte("redisrepl gateway tenant password\x00" + user))
	return hex.EncodeToString(m.Sum(nil))
}
