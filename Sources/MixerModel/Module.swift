// MixerModel
