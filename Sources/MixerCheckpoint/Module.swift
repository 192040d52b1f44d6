// MixerCheckpoint
