// MixerData
