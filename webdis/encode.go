package webdis

// Webdis reads a command from a POST body as "/"-separated, percent-encoded
// arguments. Only bytes that can never be misread are left as they are:
// '/' separates arguments, '.' marks the reply format (".raw"), '+' is decoded
// as a space, and '%' starts an escape, so all of those — and every byte that is
// not a letter, digit, '-' or '_' — are escaped. Empty arguments survive
// ("SET/k/.raw" is SET k "").

const hexDigits = "0123456789ABCDEF"

// safe[b] is true for the bytes sent unescaped.
var safe = func() (t [256]bool) {
	for b := 'a'; b <= 'z'; b++ {
		t[b] = true
	}
	for b := 'A'; b <= 'Z'; b++ {
		t[b] = true
	}
	for b := '0'; b <= '9'; b++ {
		t[b] = true
	}
	t['-'], t['_'] = true, true
	return
}()

// EncodedLen is the number of bytes arg takes in a request body.
func EncodedLen(arg []byte) int {
	n := len(arg)
	for _, b := range arg {
		if !safe[b] {
			n += 2
		}
	}
	return n
}

// AppendArg appends the percent-encoded arg to buf.
func AppendArg(buf, arg []byte) []byte {
	for _, b := range arg {
		if safe[b] {
			buf = append(buf, b)
		} else {
			buf = append(buf, '%', hexDigits[b>>4], hexDigits[b&15])
		}
	}
	return buf
}

// AppendCommand appends a whole command in Webdis's POST syntax, asking for a
// raw (RESP) reply, which unlike JSON is binary-safe.
func AppendCommand(buf []byte, args ...[]byte) []byte {
	for i, a := range args {
		if i > 0 {
			buf = append(buf, '/')
		}
		buf = AppendArg(buf, a)
	}
	return append(buf, ".raw"...)
}

// CommandLen is len(AppendCommand(nil, args...)).
func CommandLen(args ...[]byte) int {
	n := len(".raw")
	for i, a := range args {
		if i > 0 {
			n++
		}
		n += EncodedLen(a)
	}
	return n
}
