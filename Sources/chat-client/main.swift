ChatClientCommand.main()
