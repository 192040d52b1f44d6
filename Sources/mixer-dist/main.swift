// mixer-dist: the command line. Each subcommand parses its flags and calls the MixerTrain library.
MixerDistCommand.main()
