package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
)

// Every tenant has an ACL user on the hub, named UserPrefix + its name,
// created, updated and removed by the gateway from the file.

// aclRule is the ACL SETUSER argument list that makes t's user exactly
// what the tenant may do:
//
//	ACL SETUSER <prefix><name> reset on ><password>
//	    ~<ns>* ...                    each namespace, glob-escaped: read and write
//	    %R~<read>* ...                each read prefix: read only
//	    (~<canary of ns>* +set ...)   each namespace's canary keys (canary.go)
//	    &__keyspace@<db>__:<ns>* ...  keyspace channels of its namespaces
//	    &<ns>* ...                    channels named in its namespaces
//	    +<command> ...                the allow-list of policy.go, nothing else
//	    +memory|usage                 the size of its keys
//	    +select|<db>                  its own database, if not 0
//
// "reset" starts from no keys, no channels, no commands.
func aclRule(user, pass string, db int, c config.Tenant) []any {
	args := []any{"SETUSER", user, "reset", "on", ">" + pass}
	for _, ns := range c.Namespaces {
		args = append(args, "~"+globEscape(ns)+"*")
	}
	for _, r := range c.Read {
		args = append(args, "%R~"+globEscape(r)+"*")
	}
	args = append(args, canarySelectors(c)...) // canary.go
	for _, g := range channelGrants(db, c) {
		if !g.readOnly {
			args = append(args, "&"+g.pattern)
		}
	}
	args = append(args, "-@all")
	for _, cmd := range aclCommands {
		args = append(args, "+"+strings.ToLower(cmd))
	}
	args = append(args, "+memory|usage")
	if db != 0 { // new connections start in db 0
		args = append(args, "+select|"+strconv.Itoa(db))
	}
	return args
}

// setUser creates or updates t's ACL user on the hub.
func (t *tenant) setUser(ctx context.Context) error {
	do := func(rule []any) error { return t.g.backend.setUser(ctx, rule) }
	if t.g.backend == nil {
		c, err := t.g.admin.GetContext(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		do = func(rule []any) error { _, err := c.Do("ACL", rule...); return err }
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.retired.Err() != nil {
		return errRetired
	}
	if err := do(aclRule(t.user, t.pass, t.g.cfg.RedisDB, t.cfg)); err != nil {
		t.ready = false
		return fmt.Errorf("ACL SETUSER %s: %w", t.user, err)
	}
	t.ready = true
	return nil
}

var errRetired = errors.New("tenant removed or changed")

// retireNow ends the tenant's streams and stops it from setting its user
// again; it waits for a SETUSER in flight.
func (t *tenant) retireNow() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.retire()
}

func (t *tenant) isReady() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ready
}

// delUser removes an ACL user; Redis closes its connections.
func (g *Gateway) delUser(ctx context.Context, user string) error {
	if g.backend != nil {
		return g.backend.delUser(ctx, user)
	}
	c, err := g.admin.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do("ACL", "DELUSER", user)
	return err
}

// staleUsers are the hub's ACL users named with the gateway's prefix that
// no tenant has (left by an earlier run whose file had other tenants).
func (g *Gateway) staleUsers(ctx context.Context, keep map[string]bool) ([]string, error) {
	users, err := g.aclUsers(ctx)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, u := range users {
		if strings.HasPrefix(u, g.cfg.UserPrefix) && !keep[u] {
			stale = append(stale, u)
		}
	}
	return stale, nil
}

// aclUsers are the hub's ACL users (on a cluster: of every node).
func (g *Gateway) aclUsers(ctx context.Context) ([]string, error) {
	if g.backend != nil {
		return g.backend.users(ctx)
	}
	c, err := g.admin.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return redis.Strings(c.Do("ACL", "USERS"))
}
