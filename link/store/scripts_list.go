package store

// Scripts are every Lua script the link sends to a side. The hub gateway
// lets a tenant run these (by SHA1 or exact source) and refuses other
// scripts by default; cmd/redisrepl's TestGatewayKnowsLinkScripts keeps
// the gateway's list (webdis/gateway/linkscripts.go) equal to this one.
func Scripts() []*Script {
	return []*Script{readScript, digestScript, scanScript, applyScript, casApplyScript, existsScript,
		stageScript, finishScript, chunkScript, hashChunkScript, stringHashScript}
}
