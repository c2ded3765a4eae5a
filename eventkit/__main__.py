from eventkit.cli.main import main

main()
