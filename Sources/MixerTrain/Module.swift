// MixerTrain
