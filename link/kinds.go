package link

import (
	"errors"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
)

// answered says whether err is the side's answer (an error reply, or a
// refusal: webdis.ErrRefused), as opposed to no answer.
func answered(err error) bool {
	var re redis.Error
	return errors.As(err, &re) || errors.Is(webdis.Classify(err), webdis.ErrRefused)
}

// sideWide says whether err concerns a side as a whole (it is down, slow,
// refuses the link, or answers garbage: webdis.ErrTransient, or Webdis
// refusing the request) rather than one key: then the whole batch waits,
// with backoff. Anything else is taken as one key's problem.
func sideWide(err error) bool {
	err = webdis.Classify(err)
	return errors.Is(err, webdis.ErrTransient) || webdis.KindOf(err) == webdis.KindForbidden
}

// permanent says whether a key's error will not go away by retrying the
// same state: the key or its value is over a size limit.
func permanent(err error) bool { return errors.Is(webdis.Classify(err), webdis.ErrPermanent) }
