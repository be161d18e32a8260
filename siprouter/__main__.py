from siprouter.cli.main import main

main()
