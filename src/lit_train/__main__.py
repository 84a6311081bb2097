from lit_train.cli import main

main()
