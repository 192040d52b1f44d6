// MixerDistributed
